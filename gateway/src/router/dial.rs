//! Ringing people for callers (an IVR `connect`, a mailbox's follow-me): which targets ring
//! when (all at once, or hunt), the allow-list and rate limits every placed call passes, the
//! offline check, and the bridge made when someone answers. Whoever answers first takes the
//! call; the others are cancelled. When nobody answers, the caller's endpoint is told.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use jid::{BareJid, FullJid, Jid};

use super::core::{RouterCore, RouterOutput};
use crate::call::CallCommand;
use crate::config::OutboundConfig;
use crate::endpoint::DialPlan;
use crate::jingle::negotiate::Negotiated;
use crate::types::{CallId, EndReason};

/// The window the per-minute rate limits count in.
const RATE_WINDOW: Duration = Duration::from_secs(60);
/// Devices remembered online per user: anyone subscribed can claim any number of resources.
pub(super) const MAX_DEVICES_PER_USER: usize = 16;

/// One caller's ringing.
#[derive(Debug)]
struct Dialing {
    /// The virtual JID the caller called: ours calls from it.
    virtual_jid: String,
    plan: DialPlan,
    /// The next target in the plan to ring.
    next: usize,
    /// Calls placed and still ringing.
    ringing: Vec<CallId>,
    /// Why the last attempt failed (told to the caller's endpoint if none is left).
    last_failure: EndReason,
}

/// Everything about the calls the gateway places for its callers.
#[derive(Debug, Default)]
pub struct Dialer {
    config: OutboundConfig,
    /// By the caller's call.
    dialings: HashMap<CallId, Dialing>,
    /// Placed calls still ringing, with the caller each rings for.
    attempts: HashMap<CallId, CallId>,
    /// When calls were placed, over all targets and per target (for the rate limits).
    placed: VecDeque<Instant>,
    placed_to: HashMap<BareJid, VecDeque<Instant>>,
    /// The devices of users whose presence the virtual JIDs see (their subscribers).
    online: HashMap<BareJid, HashSet<FullJid>>,
}

impl Dialer {
    /// A dialer with `config`'s allow-list and limits.
    pub(super) fn new(config: OutboundConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// The allow-list and limits of a reloaded config.
    pub(super) fn set_config(&mut self, config: OutboundConfig) {
        self.config = config;
    }

    /// A device of a user we see presence from came online.
    pub(super) fn device_online(&mut self, device: FullJid) {
        let devices = self.online.entry(device.to_bare()).or_default();
        if devices.len() < MAX_DEVICES_PER_USER {
            devices.insert(device);
        }
    }

    /// A device went offline.
    pub(super) fn device_offline(&mut self, device: &FullJid) {
        let bare = device.to_bare();
        if let Some(devices) = self.online.get_mut(&bare) {
            devices.remove(device);
            if devices.is_empty() {
                self.online.remove(&bare);
            }
        }
    }

    /// Whether the rate limits let one more call go to `target` at `now` (old entries are
    /// forgotten on the way).
    fn within_limits(&mut self, target: &BareJid, now: Instant) -> bool {
        let forget = |times: &mut VecDeque<Instant>| {
            while times
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) >= RATE_WINDOW)
            {
                times.pop_front();
            }
        };
        forget(&mut self.placed);
        self.placed_to.retain(|_, times| {
            forget(times);
            !times.is_empty()
        });
        let to_target = self.placed_to.get(target).map_or(0, VecDeque::len);
        self.attempts.len() < self.config.max_calls
            && self.placed.len() < self.config.calls_per_minute as usize
            && to_target < self.config.calls_per_target_per_minute as usize
    }

    fn count_placed(&mut self, target: BareJid, now: Instant) {
        self.placed.push_back(now);
        self.placed_to.entry(target).or_default().push_back(now);
    }
}

impl RouterCore {
    /// A call's endpoint asks to ring people for its caller.
    pub(super) fn start_connect(&mut self, now: Instant, caller: CallId, plan: DialPlan) {
        let Some(virtual_jid) = self.calls.get(&caller).map(|c| c.virtual_jid.clone()) else {
            return;
        };
        if self.dialer.dialings.contains_key(&caller) {
            return;
        }
        self.dialer.dialings.insert(
            caller,
            Dialing {
                virtual_jid,
                plan,
                next: 0,
                ringing: Vec::new(),
                last_failure: EndReason::NotAllowed,
            },
        );
        self.ring_next(now, caller);
    }

    /// Rings the caller's next targets (all that are left, or the next one when hunting), and
    /// tells the caller's endpoint when nobody is left to ring.
    fn ring_next(&mut self, now: Instant, caller: CallId) {
        loop {
            let Some(dialing) = self.dialer.dialings.get_mut(&caller) else {
                return;
            };
            let more = dialing.next < dialing.plan.targets.len();
            if !more {
                if dialing.ringing.is_empty() {
                    let reason = dialing.last_failure;
                    self.dialer.dialings.remove(&caller);
                    self.command_call(caller, CallCommand::ConnectFailed(reason));
                }
                return;
            }
            if !dialing.plan.ring_all && !dialing.ringing.is_empty() {
                return;
            }
            let target = dialing.plan.targets[dialing.next].clone();
            dialing.next += 1;
            let (virtual_jid, timeout) = (dialing.virtual_jid.clone(), dialing.plan.ring_timeout);
            match self.place(now, &virtual_jid, &target, timeout) {
                Ok(attempt) => {
                    tracing::info!(caller = %caller, call_id = %attempt, %target, "ringing");
                    self.dialer.attempts.insert(attempt, caller);
                    if let Some(dialing) = self.dialer.dialings.get_mut(&caller) {
                        dialing.ringing.push(attempt);
                    }
                }
                Err(reason) => {
                    tracing::info!(caller = %caller, %target, reason = %reason, "not ringing");
                    if let Some(dialing) = self.dialer.dialings.get_mut(&caller) {
                        dialing.last_failure = reason;
                    }
                }
            }
        }
    }

    /// Places one call, if the allow-list, the limits and the target's presence let it go.
    fn place(
        &mut self,
        now: Instant,
        virtual_jid: &str,
        target: &Jid,
        timeout: Duration,
    ) -> Result<CallId, EndReason> {
        let jid = target.clone();
        if !self.dialer.config.allows(target.as_str()) {
            tracing::warn!(%target, "not in outbound.allow: not ringing");
            return Err(EndReason::NotAllowed);
        }
        let bare = jid.to_bare();
        if !self.dialer.within_limits(&bare, now) {
            tracing::warn!(%target, "outbound call limits reached: not ringing");
            return Err(EndReason::NotAllowed);
        }
        // A subscriber's presence is seen: with no device online, nothing would ring.
        let sees_presence = self.subscribers.is_subscriber(&bare);
        let online = self.dialer.online.get(&bare).is_some_and(|d| !d.is_empty());
        if jid.resource().is_none() && sees_presence && !online {
            return Err(EndReason::PeerGone);
        }
        let attempt = self.jingle.place_call(now, virtual_jid, jid, timeout)?;
        self.dialer.count_placed(bare, now);
        self.metrics.call_placed();
        Ok(attempt)
    }

    /// The callee of a call we placed answered: if it rang for a caller who is still there,
    /// the two are bridged and the caller's other attempts cancelled.
    pub(super) fn attempt_answered(&mut self, attempt: CallId, media: Negotiated) {
        let callee_codec = media.codec;
        if let Some(call) = self.calls.get_mut(&attempt) {
            call.codec = Some(callee_codec);
        }
        self.command_call(attempt, CallCommand::Answered(media));
        let caller = self.dialer.attempts.remove(&attempt);
        let dialing = caller.and_then(|caller| self.dialer.dialings.remove(&caller));
        let caller_codec = caller
            .and_then(|caller| self.calls.get(&caller))
            .and_then(|call| call.codec);
        let (Some(caller), Some(dialing), Some(caller_codec)) = (caller, dialing, caller_codec)
        else {
            // Nobody to bridge with any more.
            self.jingle.cancel_call(attempt, EndReason::Cancelled);
            return;
        };
        for other in dialing.ringing.into_iter().filter(|c| *c != attempt) {
            self.dialer.attempts.remove(&other);
            self.jingle.cancel_call(other, EndReason::Cancelled);
        }
        tracing::info!(caller = %caller, call_id = %attempt, caller_codec = caller_codec.name(),
            callee_codec = callee_codec.name(), "answered: bridging");
        self.push(RouterOutput::Bridge {
            caller: (caller, caller_codec),
            answered: (attempt, callee_codec),
        });
    }

    /// A call we placed ended before it was answered: the caller's next target rings.
    pub(super) fn attempt_ended(&mut self, now: Instant, attempt: CallId, reason: EndReason) {
        let Some(caller) = self.dialer.attempts.remove(&attempt) else {
            return;
        };
        if let Some(dialing) = self.dialer.dialings.get_mut(&caller) {
            dialing.ringing.retain(|c| *c != attempt);
            dialing.last_failure = reason;
        }
        self.ring_next(now, caller);
    }

    /// A caller's call ended: whatever still rings for it is cancelled.
    pub(super) fn caller_ended(&mut self, caller: CallId) {
        let Some(dialing) = self.dialer.dialings.remove(&caller) else {
            return;
        };
        for attempt in dialing.ringing {
            self.dialer.attempts.remove(&attempt);
            self.jingle.cancel_call(attempt, EndReason::Cancelled);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> BareJid {
        BareJid::new(s).unwrap()
    }

    fn limited(max_calls: usize, per_minute: u32, per_target: u32) -> Dialer {
        Dialer::new(OutboundConfig {
            allow: vec!["example.org".into()],
            max_calls,
            calls_per_minute: per_minute,
            calls_per_target_per_minute: per_target,
        })
    }

    #[test]
    fn a_target_is_rung_at_most_its_limit_per_minute() {
        let mut dialer = limited(10, 100, 2);
        let (sales, support) = (jid("sales@example.org"), jid("support@example.org"));
        let start = Instant::now();
        for i in 0..2 {
            assert!(dialer.within_limits(&sales, start + Duration::from_secs(i)));
            dialer.count_placed(sales.clone(), start + Duration::from_secs(i));
        }
        assert!(!dialer.within_limits(&sales, start + Duration::from_secs(30)));
        assert!(dialer.within_limits(&support, start + Duration::from_secs(30)));
        // A minute after the first call, one more may go.
        assert!(dialer.within_limits(&sales, start + Duration::from_secs(60)));
    }

    #[test]
    fn a_user_claiming_many_resources_is_remembered_with_a_few() {
        let mut dialer = limited(10, 100, 100);
        for n in 0..1000 {
            let device = FullJid::new(&format!("mallory@example.org/r{n}")).unwrap();
            dialer.device_online(device);
        }
        assert_eq!(
            dialer.online[&jid("mallory@example.org")].len(),
            MAX_DEVICES_PER_USER
        );
    }

    #[test]
    fn all_targets_together_are_limited_per_minute_and_at_once() {
        let mut dialer = limited(10, 3, 100);
        let start = Instant::now();
        for i in 0..3 {
            let target = jid(&format!("u{i}@example.org"));
            assert!(dialer.within_limits(&target, start));
            dialer.count_placed(target, start);
        }
        assert!(!dialer.within_limits(&jid("u9@example.org"), start + Duration::from_secs(59)));
        assert!(dialer.within_limits(&jid("u9@example.org"), start + Duration::from_secs(60)));

        let mut dialer = limited(1, 100, 100);
        dialer.attempts.insert(CallId(1), CallId(2));
        assert!(
            !dialer.within_limits(&jid("u@example.org"), start),
            "one ringing already"
        );
    }
}
