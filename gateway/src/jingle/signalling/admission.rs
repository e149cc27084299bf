//! May this call start? One decision for session-initiates and proposals alike: the virtual
//! JID's `callers` list, then the calls in progress (overall, to the JID, from the caller, from
//! the caller's domain), then the rates of new calls per caller and per domain. A remote server
//! can mint any number of users, so the per-domain limits are what stop one server from taking
//! every slot; the local domains (the server the gateway is attached to) are exempt from them.

use std::time::Instant;

use jid::{BareJid, FullJid};

use super::Refusal;
use crate::config::CallerList;
use crate::rate::{KeyedBuckets, Rate, Taken};
use crate::types::EndReason;

/// Callers whose rate of new calls is tracked at once; beyond it, calls from new callers are
/// refused until older buckets have refilled.
pub const MAX_TRACKED_CALLERS: usize = 10_000;
/// Domains whose rate of new calls is tracked at once.
pub const MAX_TRACKED_DOMAINS: usize = 1_000;

/// A virtual JID, as the core sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualJidPolicy {
    /// Whether its endpoint can take calls in this build.
    pub available: bool,
    /// Who may call it.
    pub callers: CallerList,
}

/// How many calls may be in progress, and how fast new ones may come.
#[derive(Debug, Clone, PartialEq)]
pub struct CallLimits {
    /// Calls and proposals at once over all virtual JIDs.
    pub max_calls: usize,
    /// Calls and proposals at once to one virtual JID.
    pub max_calls_per_jid: usize,
    /// Calls and proposals at once from one user (bare JID).
    pub max_calls_per_caller: usize,
    /// Calls and proposals at once from the users of one domain (not a local one).
    pub max_calls_per_domain: usize,
    /// New calls and proposals from one user.
    pub per_caller: Rate,
    /// New calls and proposals from the users of one domain (not a local one).
    pub per_domain: Rate,
}

/// The calls in progress a new call is counted with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InProgress {
    /// Over all virtual JIDs.
    pub total: usize,
    /// To the virtual JID called.
    pub to_callee: usize,
    /// From the caller (any device).
    pub from_caller: usize,
    /// From the caller's domain.
    pub from_domain: usize,
}

/// Why a call may not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The virtual JID's `callers` list does not name the caller.
    NotAllowed,
    /// The gateway has as many calls as it may.
    GatewayFull,
    /// The virtual JID has as many calls as it may.
    CalleeFull,
    /// The caller has as many calls as it may.
    CallerFull,
    /// The caller's domain has as many calls as it may.
    DomainFull,
    /// The caller or its domain starts new calls too fast.
    TooFast,
}

/// How a new call asks to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// A `session-initiate` with no proposal before it.
    Initiate,
    /// An XEP-0353 proposal.
    Proposal,
    /// A `session-initiate` after our `<proceed/>`: admitted as a proposal already.
    Proceeded,
}

/// What becomes of a new call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It starts.
    Start,
    /// The `session-initiate` is answered with this IQ error.
    RefuseIq(Refusal),
    /// It is acknowledged, then ended with this reason (a `session-terminate`, or a JMI
    /// `<reject/>` for a proposal).
    End(EndReason),
}

/// The admission table: what becomes of a call asked for in `asked` way, given what
/// [`Admission::admit`] said (`Ok` for a proceeded call, which is not asked again) and whether
/// the virtual JID's endpoint is available. An IQ error is the answer where the asker reads
/// one (a bare `session-initiate`); a proposal gets a reason in its reject; a JID that is busy
/// or unavailable answers a session it acknowledged with a reason, so the caller's client shows
/// why.
pub fn verdict(asked: Asked, admitted: Result<(), Refused>, available: bool) -> Verdict {
    use Refused::*;
    match (asked, admitted) {
        (Asked::Initiate, Err(NotAllowed)) => Verdict::RefuseIq(Refusal::Forbidden),
        (Asked::Initiate, Err(GatewayFull | CallerFull)) => Verdict::RefuseIq(Refusal::Overloaded),
        (Asked::Initiate, Err(DomainFull | TooFast)) => Verdict::RefuseIq(Refusal::TooManyCalls),
        (Asked::Proposal, Err(NotAllowed)) => Verdict::End(EndReason::CallerNotAllowed),
        (Asked::Proposal, Err(DomainFull | TooFast)) => Verdict::End(EndReason::TooManyCalls),
        (Asked::Proposal, Err(GatewayFull | CallerFull)) => Verdict::End(EndReason::Busy),
        (_, Ok(()) | Err(CalleeFull)) if !available => Verdict::End(EndReason::EndpointUnavailable),
        (_, Err(CalleeFull)) => Verdict::End(EndReason::Busy),
        // A proceeded call was admitted as a proposal: it is never refused a second time.
        (Asked::Proceeded, Err(_)) | (_, Ok(())) => Verdict::Start,
    }
}

/// The admission decisions and the state they keep (rates per caller and per domain).
#[derive(Debug)]
pub struct Admission {
    limits: CallLimits,
    local_domains: Vec<String>,
    callers: KeyedBuckets<BareJid>,
    domains: KeyedBuckets<String>,
}

impl Admission {
    /// Decides with `limits`; `local_domains` are what `"@local"` means and are exempt from the
    /// per-domain limits.
    pub fn new(limits: CallLimits, local_domains: Vec<String>) -> Self {
        Self {
            callers: KeyedBuckets::new(limits.per_caller, MAX_TRACKED_CALLERS),
            domains: KeyedBuckets::new(limits.per_domain, MAX_TRACKED_DOMAINS),
            limits,
            local_domains,
        }
    }

    /// The limits decided with.
    pub fn limits(&self) -> &CallLimits {
        &self.limits
    }

    /// Whether `caller` may call `virtual_jid` now, with `in_progress` calls going on. A call that
    /// may start uses up one of its caller's and its domain's new calls.
    pub fn admit(
        &mut self,
        now: Instant,
        caller: &FullJid,
        virtual_jid: &VirtualJidPolicy,
        in_progress: InProgress,
    ) -> Result<(), Refused> {
        if !virtual_jid.callers.allows(caller, &self.local_domains) {
            return Err(Refused::NotAllowed);
        }
        let local = self.is_local(caller);
        let limits = &self.limits;
        if in_progress.total >= limits.max_calls {
            return Err(Refused::GatewayFull);
        }
        if in_progress.from_caller >= limits.max_calls_per_caller {
            return Err(Refused::CallerFull);
        }
        if !local && in_progress.from_domain >= limits.max_calls_per_domain {
            return Err(Refused::DomainFull);
        }
        if in_progress.to_callee >= limits.max_calls_per_jid {
            return Err(Refused::CalleeFull);
        }
        let domain = caller.domain().to_string();
        if !local && self.domains.try_take(&domain, now) != Taken::Yes {
            return Err(Refused::TooFast);
        }
        if self.callers.try_take(&caller.to_bare(), now) != Taken::Yes {
            return Err(Refused::TooFast);
        }
        Ok(())
    }

    /// Whether `caller` is a user of a local domain.
    pub fn is_local(&self, caller: &FullJid) -> bool {
        self.local_domains
            .iter()
            .any(|d| d == caller.domain().as_str())
    }

    /// Callers and domains whose rates are tracked now.
    #[cfg(test)]
    pub fn tracked(&self) -> (usize, usize) {
        (self.callers.len(), self.domains.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits() -> CallLimits {
        CallLimits {
            max_calls: 100,
            max_calls_per_jid: 50,
            max_calls_per_caller: 3,
            max_calls_per_domain: 5,
            per_caller: Rate::per_minute(4),
            per_domain: Rate::per_minute(10),
        }
    }

    fn open() -> VirtualJidPolicy {
        VirtualJidPolicy {
            available: true,
            callers: CallerList::anyone(),
        }
    }

    fn full(jid: &str) -> FullJid {
        FullJid::new(jid).unwrap()
    }

    const IDLE: InProgress = InProgress {
        total: 0,
        to_callee: 0,
        from_caller: 0,
        from_domain: 0,
    };

    #[test]
    fn limits_are_checked_in_order() {
        let now = Instant::now();
        let mut admission = Admission::new(limits(), vec!["localhost".into()]);
        let caller = full("mallory@evil.example/x");
        let cases = [
            (InProgress { total: 100, ..IDLE }, Refused::GatewayFull),
            (
                InProgress {
                    from_caller: 3,
                    ..IDLE
                },
                Refused::CallerFull,
            ),
            (
                InProgress {
                    from_domain: 5,
                    ..IDLE
                },
                Refused::DomainFull,
            ),
            (
                InProgress {
                    to_callee: 50,
                    ..IDLE
                },
                Refused::CalleeFull,
            ),
        ];
        for (in_progress, refused) in cases {
            assert_eq!(
                admission.admit(now, &caller, &open(), in_progress),
                Err(refused)
            );
        }
        // Refusals used up no new calls.
        for _ in 0..4 {
            assert_eq!(admission.admit(now, &caller, &open(), IDLE), Ok(()));
        }
        assert_eq!(
            admission.admit(now, &caller, &open(), IDLE),
            Err(Refused::TooFast)
        );
    }

    #[test]
    fn the_callers_list_comes_first() {
        let now = Instant::now();
        let mut admission = Admission::new(limits(), vec!["localhost".into()]);
        let room = VirtualJidPolicy {
            available: true,
            callers: CallerList::parse(&["@local".to_string()]).unwrap(),
        };
        let stranger = full("mallory@evil.example/x");
        let full_gateway = InProgress { total: 100, ..IDLE };
        assert_eq!(
            admission.admit(now, &stranger, &room, full_gateway),
            Err(Refused::NotAllowed)
        );
        assert_eq!(
            admission.admit(now, &full("alice@localhost/a"), &room, IDLE),
            Ok(())
        );
    }

    #[test]
    fn one_domain_minting_users_is_held_to_the_domain_rate() {
        let start = Instant::now();
        let mut admission = Admission::new(limits(), vec!["localhost".into()]);
        let admitted = (0..100)
            .filter(|n| {
                let caller = full(&format!("u{n}@evil.example/x"));
                admission.admit(start, &caller, &open(), IDLE).is_ok()
            })
            .count();
        assert_eq!(admitted, 10);
        // Another domain is not held up by it.
        assert_eq!(
            admission.admit(start, &full("bob@good.example/x"), &open(), IDLE),
            Ok(())
        );
        // Local users are not held to a domain rate, only to their own.
        let local = (0..100)
            .filter(|n| {
                let caller = full(&format!("u{n}@localhost/x"));
                admission.admit(start, &caller, &open(), IDLE).is_ok()
            })
            .count();
        assert_eq!(local, 100);
        // A minute later the domain may call again.
        let later = start + Duration::from_secs(60);
        assert_eq!(
            admission.admit(later, &full("u0@evil.example/y"), &open(), IDLE),
            Ok(())
        );
    }

    #[test]
    fn a_local_domain_is_not_held_to_the_domain_limit() {
        let now = Instant::now();
        let mut admission = Admission::new(limits(), vec!["localhost".into()]);
        let many = InProgress {
            from_domain: 40,
            ..IDLE
        };
        assert_eq!(
            admission.admit(now, &full("alice@localhost/a"), &open(), many),
            Ok(())
        );
        assert_eq!(
            admission.admit(now, &full("bob@remote.example/a"), &open(), many),
            Err(Refused::DomainFull)
        );
    }

    #[test]
    fn tracked_callers_are_bounded() {
        let now = Instant::now();
        let limits = CallLimits {
            per_domain: Rate::per_minute(1_000_000),
            ..limits()
        };
        let mut admission = Admission::new(limits, Vec::new());
        for n in 0..MAX_TRACKED_CALLERS + 10 {
            let caller = full(&format!("u{n}@evil.example/x"));
            let _ = admission.admit(now, &caller, &open(), IDLE);
        }
        assert_eq!(admission.tracked(), (MAX_TRACKED_CALLERS, 1));
    }

    #[test]
    fn the_admission_table_row_by_row() {
        use Asked::*;
        use Refused::*;
        let rows = [
            (
                Initiate,
                Err(NotAllowed),
                true,
                Verdict::RefuseIq(Refusal::Forbidden),
            ),
            (
                Initiate,
                Err(GatewayFull),
                true,
                Verdict::RefuseIq(Refusal::Overloaded),
            ),
            (
                Initiate,
                Err(CallerFull),
                true,
                Verdict::RefuseIq(Refusal::Overloaded),
            ),
            (
                Initiate,
                Err(DomainFull),
                true,
                Verdict::RefuseIq(Refusal::TooManyCalls),
            ),
            (
                Initiate,
                Err(TooFast),
                true,
                Verdict::RefuseIq(Refusal::TooManyCalls),
            ),
            (
                Initiate,
                Err(CalleeFull),
                true,
                Verdict::End(EndReason::Busy),
            ),
            (
                Initiate,
                Err(CalleeFull),
                false,
                Verdict::End(EndReason::EndpointUnavailable),
            ),
            (
                Initiate,
                Ok(()),
                false,
                Verdict::End(EndReason::EndpointUnavailable),
            ),
            (Initiate, Ok(()), true, Verdict::Start),
            (
                Proposal,
                Err(NotAllowed),
                true,
                Verdict::End(EndReason::CallerNotAllowed),
            ),
            (
                Proposal,
                Err(GatewayFull),
                true,
                Verdict::End(EndReason::Busy),
            ),
            (
                Proposal,
                Err(CallerFull),
                true,
                Verdict::End(EndReason::Busy),
            ),
            (
                Proposal,
                Err(DomainFull),
                true,
                Verdict::End(EndReason::TooManyCalls),
            ),
            (
                Proposal,
                Err(TooFast),
                true,
                Verdict::End(EndReason::TooManyCalls),
            ),
            (
                Proposal,
                Err(CalleeFull),
                true,
                Verdict::End(EndReason::Busy),
            ),
            (
                Proposal,
                Ok(()),
                false,
                Verdict::End(EndReason::EndpointUnavailable),
            ),
            (Proposal, Ok(()), true, Verdict::Start),
            (
                Proceeded,
                Ok(()),
                false,
                Verdict::End(EndReason::EndpointUnavailable),
            ),
            (Proceeded, Ok(()), true, Verdict::Start),
        ];
        for (asked, admitted, available, expected) in rows {
            assert_eq!(
                verdict(asked, admitted, available),
                expected,
                "{asked:?} {admitted:?} available={available}"
            );
        }
    }
}
