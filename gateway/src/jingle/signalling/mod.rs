//! The signalling core, sans-IO: every Jingle session and XEP-0353 proposal of the gateway, the
//! call limits, and the timers. Input comes through `handle_*(now, ...)`, output leaves through
//! [`Signalling::poll_output`], and [`Signalling::poll_timeout`] gives the next deadline. It never
//! reads the clock, touches a socket or spawns.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use jid::{FullJid, Jid};

use crate::protocol::ice_udp::Candidate;
use crate::protocol::jingle::{Action, Jingle, Sid};
use crate::protocol::jmi::Jmi;

use super::negotiate::{LocalTransport, Negotiated};
use super::session::Session;
use super::timers::{Deadlines, Owner, Timer, Timers};
use crate::types::CallId;
use crate::types::EndReason;

mod admission;
mod answering;
mod glare;
mod iq;
mod jmi;
mod outbound;
#[cfg(test)]
mod tests;

pub use admission::{CallLimits, VirtualJidPolicy, MAX_TRACKED_CALLERS, MAX_TRACKED_DOMAINS};

use admission::{Admission, InProgress};
use iq::PendingIq;
use outbound::OutgoingProposal;

/// ICE restarts a peer may make in one call.
pub const MAX_RESTARTS_PER_CALL: u32 = 10;
/// Shortest time between two ICE restarts of a peer.
pub const MIN_RESTART_INTERVAL: Duration = Duration::from_secs(2);

/// IQs of one call whose answers are waited for at once.
pub const MAX_PENDING_IQS_PER_CALL: usize = 16;

/// What the signalling core needs to know, fixed for its lifetime.
#[derive(Debug, Clone)]
pub struct SignallingConfig {
    /// The component domain.
    pub domain: String,
    /// The virtual JIDs by local part: whether they take calls, and from whom.
    pub virtual_jids: HashMap<String, VirtualJidPolicy>,
    /// How many calls at once, and how many new ones a minute.
    pub limits: CallLimits,
    /// The domains of the server the gateway is attached to (`"@local"` in `callers`; exempt
    /// from the per-domain limits).
    pub local_domains: Vec<String>,
    /// XEP-0353: from `<proceed/>` to `session-initiate`.
    pub ring_timeout: Duration,
    /// From `session-initiate` to the acknowledged `session-accept`.
    pub answer_timeout: Duration,
    /// Longest call.
    pub max_duration: Duration,
    /// Our DTLS certificate's SHA-256 fingerprint, `AA:BB:...`.
    pub fingerprint_sha256: String,
    /// Take the DTLS client role (`setup='active'`) when the caller lets us choose.
    pub prefer_dtls_active: bool,
    /// Resource of the full JID a virtual JID proceeds from, e.g. `gateway`.
    pub resource: String,
    /// Prefix of the ids of IQs we send, unique per process.
    pub iq_id_prefix: String,
}

/// Why an inbound Jingle IQ is answered with an error; the XMPP layer maps it to a stanza error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No such virtual JID (`item-not-found`).
    UnknownCallee,
    /// No such session (`item-not-found` + `<unknown-session/>`).
    UnknownSession,
    /// The action does not fit the session's state (`unexpected-request` + `<out-of-order/>`).
    OutOfOrder,
    /// Unknown session-info payload (`feature-not-implemented` + `<unsupported-info/>`).
    UnsupportedInfo,
    /// Too many calls in progress (`resource-constraint`).
    Overloaded,
    /// The caller may not call this virtual JID (`forbidden`).
    Forbidden,
    /// The caller, or its domain, has or starts too many calls (`resource-constraint`).
    TooManyCalls,
    /// Both parties initiated at once and the caller's session lost (`conflict` +
    /// `<tie-break/>`, XEP-0166).
    TieBreak,
    /// An ICE restart too soon after the last, one too many, or with credentials that do not
    /// follow RFC 8839 (`resource-constraint`); the call goes on as it was.
    RestartRefused,
    /// The gateway is shutting down (`service-unavailable`).
    ShuttingDown,
}

/// An event from a call's media leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// The local ICE credentials, SSRC and the candidates known so far: the answer can go out
    /// (or, after an ICE restart, the new credentials).
    LocalTransport(LocalTransport),
    /// A local candidate gathered later (trickle).
    LocalCandidate(Candidate),
    /// The media leg or the endpoint ended the call.
    Ended(EndReason),
}

/// What a new call needs to start its media leg and endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallStart {
    /// The call.
    pub call_id: CallId,
    /// Local part of the virtual JID called (or calling, when the gateway places the call).
    pub virtual_jid: String,
    /// The other party: the caller, or the device that takes the call we place.
    pub peer: FullJid,
    /// Session id.
    pub sid: Sid,
    /// The caller's negotiated offer; `None` when we place the call: the media leg starts
    /// gathering, and the answer follows in [`Output::Answered`].
    pub offer: Option<Negotiated>,
    /// Whether the caller rang with XEP-0353 before its session-initiate.
    pub via_jmi: bool,
}

/// Output of the core, in the order it must be acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send a Jingle IQ set.
    JingleIq {
        /// IQ id (responses are fed back to [`Signalling::handle_iq_response`]).
        id: String,
        /// Sender: exactly the JID that was called.
        from: Jid,
        /// Recipient: the caller's full JID.
        to: FullJid,
        /// Payload.
        jingle: Jingle,
    },
    /// Send a XEP-0353 message.
    Jmi {
        /// Sender.
        from: Jid,
        /// Recipient (a bare JID for what goes to all of a user's devices).
        to: Jid,
        /// Payload.
        jmi: Jmi,
    },
    /// Send a XEP-0184 receipt for message `id`.
    Receipt {
        /// Sender.
        from: Jid,
        /// Recipient.
        to: FullJid,
        /// Id of the received message.
        id: String,
    },
    /// Start the media leg and endpoint of a call.
    StartCall(CallStart),
    /// Remote candidates for a call's media leg.
    RemoteCandidates {
        /// The call.
        call_id: CallId,
        /// New candidates.
        candidates: Vec<Candidate>,
    },
    /// The caller restarted ICE with new credentials.
    IceRestart {
        /// The call.
        call_id: CallId,
        /// New remote ufrag.
        ufrag: String,
        /// New remote password.
        pwd: String,
        /// Candidates that came with them.
        candidates: Vec<Candidate>,
    },
    /// Stop a call's media leg and endpoint (the session is already over).
    StopCall {
        /// The call.
        call_id: CallId,
        /// Why.
        reason: EndReason,
    },
    /// The callee answered a call we placed: the media leg connects with this.
    Answered {
        /// The call.
        call_id: CallId,
        /// The negotiated media, from the callee's answer.
        media: Negotiated,
    },
    /// A call we placed ended before any session started (rejected, not answered, bounced,
    /// cancelled); once a session started, [`Output::StopCall`] says it instead.
    DialFailed {
        /// The call.
        call_id: CallId,
        /// Why.
        reason: EndReason,
    },
    /// A call ended before it started (refused, retracted, not followed up), for logs and metrics.
    CallNotStarted {
        /// Local part of the virtual JID called.
        virtual_jid: String,
        /// The caller.
        peer: FullJid,
        /// Why.
        reason: EndReason,
    },
}

/// An XEP-0353 proposal we proceeded with, waiting for its `session-initiate`.
#[derive(Debug, Clone)]
struct Proposal {
    virtual_jid: String,
    timers: Timers,
}

type SessionKey = (FullJid, Sid);

/// Every session and proposal of the gateway.
#[derive(Debug)]
pub struct Signalling {
    config: SignallingConfig,
    sessions: HashMap<CallId, Session>,
    by_key: HashMap<SessionKey, CallId>,
    proposals: HashMap<SessionKey, Proposal>,
    /// XEP-0353 proposals of calls we place, by session id.
    outgoing: HashMap<Sid, OutgoingProposal>,
    /// IQs we sent, so that the caller's answers (and only the caller's) reach the session.
    pending_iqs: HashMap<String, PendingIq>,
    outputs: VecDeque<Output>,
    /// Every armed timer's deadline, so the next one is found without a scan.
    deadlines: Deadlines,
    admission: Admission,
    next_call: u64,
    next_iq: u64,
    closing: bool,
}

impl Signalling {
    /// A core with no sessions.
    pub fn new(config: SignallingConfig) -> Self {
        Self {
            admission: Admission::new(config.limits.clone(), config.local_domains.clone()),
            config,
            sessions: HashMap::new(),
            by_key: HashMap::new(),
            proposals: HashMap::new(),
            outgoing: HashMap::new(),
            pending_iqs: HashMap::new(),
            outputs: VecDeque::new(),
            deadlines: Deadlines::default(),
            next_call: 1,
            next_iq: 1,
            closing: false,
        }
    }

    /// The virtual JIDs (local part, whether their endpoint is available, who may call) for new
    /// calls.
    pub fn set_virtual_jids(&mut self, virtual_jids: HashMap<String, VirtualJidPolicy>) {
        self.config.virtual_jids = virtual_jids;
    }

    /// Sessions in progress.
    pub fn active_calls(&self) -> usize {
        self.sessions.len()
    }

    /// The next output to act on.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The earliest deadline of any session or proposal.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let (deadlines, armed) = self.deadline_index();
        let next = deadlines.next(armed);
        debug_assert_eq!(
            next,
            self.scan_next_deadline(),
            "a timer armed without its deadline"
        );
        next
    }

    /// The earliest deadline, found by looking at every timer (what the index must agree with).
    fn scan_next_deadline(&self) -> Option<Instant> {
        let sessions = self.sessions.values().filter_map(|s| s.timers.next());
        let proposals = self.proposals.values().filter_map(|p| p.timers.next());
        let outgoing = self.outgoing.values().filter_map(|p| p.timers.next());
        sessions.chain(proposals).chain(outgoing).min()
    }

    /// The deadline index, and whether one of its entries is still armed.
    fn deadline_index(&mut self) -> (&mut Deadlines, impl Fn(&Owner, Instant) -> bool + '_) {
        let Self {
            deadlines,
            sessions,
            proposals,
            outgoing,
            ..
        } = self;
        let (sessions, proposals, outgoing) = (&*sessions, &*proposals, &*outgoing);
        let armed = move |owner: &Owner, at: Instant| {
            timers_of(sessions, proposals, outgoing, owner).is_some_and(|t| t.is_armed_at(at))
        };
        (deadlines, armed)
    }

    /// Puts `owner`'s armed timers in the deadline index; called whenever one is armed.
    fn index_timers(&mut self, owner: Owner) {
        let armed: Vec<Instant> =
            timers_of(&self.sessions, &self.proposals, &self.outgoing, &owner)
                .map(|t| t.armed().collect())
                .unwrap_or_default();
        for at in armed {
            self.deadlines.push(at, owner.clone());
        }
        let live = self.sessions.len() + self.proposals.len() + self.outgoing.len();
        let (deadlines, armed) = self.deadline_index();
        deadlines.compact(3 * live, armed);
    }

    /// An inbound Jingle IQ set from `from` to `to`. `Ok` means acknowledge it with a result
    /// (before acting on the outputs it produced); `Err` means answer with that error.
    pub fn handle_jingle(
        &mut self,
        now: Instant,
        from: FullJid,
        to: Jid,
        jingle: Jingle,
    ) -> Result<(), Refusal> {
        let key = (from, jingle.sid.clone());
        if let Some(&call_id) = self.by_key.get(&key) {
            let ours = self.sessions.get(&call_id).is_some_and(|s| s.is_calling());
            if ours && jingle.action == Action::SessionInitiate {
                return self.initiate_on_our_session(now, call_id, to, jingle);
            }
            return self.handle_session_action(now, call_id, jingle);
        }
        if jingle.action != Action::SessionInitiate {
            return Err(Refusal::UnknownSession);
        }
        self.handle_initiate(now, key, to, jingle)
    }

    /// The caller `peer` went offline: its calls and proposals end.
    pub fn handle_peer_unavailable(&mut self, _now: Instant, peer: &FullJid) {
        let calls: Vec<CallId> = self
            .sessions
            .values()
            .filter(|s| s.peer == *peer)
            .map(|s| s.call_id)
            .collect();
        for call_id in calls {
            self.end_session(call_id, EndReason::PeerGone);
        }
        let gone: Vec<SessionKey> = self
            .proposals
            .keys()
            .filter(|(p, _)| p == peer)
            .cloned()
            .collect();
        for key in gone {
            if let Some(proposal) = self.proposals.remove(&key) {
                self.outputs.push_back(Output::CallNotStarted {
                    virtual_jid: proposal.virtual_jid,
                    peer: key.0,
                    reason: EndReason::PeerGone,
                });
            }
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let (deadlines, armed) = self.deadline_index();
        let due = deadlines.due(now, armed);
        for owner in due {
            match owner {
                Owner::Session(call_id) => {
                    let timer = self
                        .sessions
                        .get(&call_id)
                        .and_then(|s| s.timers.expired(now));
                    let reason = match timer {
                        Some(Timer::Answer) => EndReason::AnswerTimeout,
                        Some(Timer::MaxDuration) => EndReason::MaxDuration,
                        Some(Timer::Ring) => EndReason::RingTimeout,
                        None => continue,
                    };
                    self.end_session(call_id, reason);
                }
                Owner::Proposal(peer, sid) => {
                    let key = (peer, sid);
                    if let Some(proposal) = self.proposals.remove(&key) {
                        self.give_up_proposal(key, proposal, EndReason::RingTimeout);
                    }
                }
                Owner::Outgoing(sid) => {
                    if let Some(call_id) = self.outgoing.get(&sid).map(|p| p.call_id) {
                        self.cancel_call(call_id, EndReason::RingTimeout);
                    }
                }
            }
        }
    }

    /// Stops taking calls and ends every call in progress with `<gone/>`.
    pub fn handle_shutdown(&mut self, _now: Instant) {
        self.closing = true;
        let calls: Vec<CallId> = self.sessions.keys().copied().collect();
        for call_id in calls {
            self.end_session(call_id, EndReason::Shutdown);
        }
        for (key, proposal) in std::mem::take(&mut self.proposals) {
            self.give_up_proposal(key, proposal, EndReason::Shutdown);
        }
        let outgoing: Vec<CallId> = self.outgoing.values().map(|p| p.call_id).collect();
        for call_id in outgoing {
            self.cancel_call(call_id, EndReason::Shutdown);
        }
    }

    /// The full JID a virtual JID proceeds from.
    fn device_jid(&self, virtual_jid: &str) -> Option<Jid> {
        FullJid::new(&format!(
            "{virtual_jid}@{}/{}",
            self.config.domain, self.config.resource
        ))
        .ok()
        .map(Jid::from)
    }

    /// Ends a call: tells the caller unless it ended the call itself, then stops the media.
    fn end_session(&mut self, call_id: CallId, reason: EndReason) {
        let Some(session) = self.sessions.remove(&call_id) else {
            return;
        };
        self.by_key
            .remove(&(session.peer.clone(), session.sid.clone()));
        self.pending_iqs.retain(|_, p| p.call_id != call_id);
        if !reason.ended_by_peer() {
            self.send_terminate(&session.local, &session.peer, &session.sid, reason);
            if session.via_jmi {
                // A call we placed rang all of the callee's devices: all of them are told.
                let to = match session.is_calling() {
                    true => session.peer.to_bare().into(),
                    false => session.peer.clone().into(),
                };
                self.send_finish(&session.local, to, &session.sid, reason);
            }
        }
        self.outputs.push_back(Output::StopCall { call_id, reason });
    }

    fn calls_in_progress(&self) -> usize {
        self.sessions.len() + self.proposals.len() + self.outgoing.len()
    }

    /// The calls in progress a new call from `caller` to `virtual_jid` is counted with.
    fn in_progress(&self, caller: &FullJid, virtual_jid: &str) -> InProgress {
        let bare = caller.to_bare();
        let domain = caller.domain();
        let peers = self
            .sessions
            .values()
            .map(|s| (&s.peer, s.virtual_jid.as_str()))
            .chain(
                self.proposals
                    .iter()
                    .map(|((p, _), q)| (p, q.virtual_jid.as_str())),
            );
        let mut counts = InProgress {
            total: self.calls_in_progress(),
            to_callee: 0,
            from_caller: 0,
            from_domain: 0,
        };
        for (peer, to) in peers {
            counts.to_callee += usize::from(to == virtual_jid);
            counts.from_caller += usize::from(peer.to_bare() == bare);
            counts.from_domain += usize::from(peer.domain() == domain);
        }
        counts
    }
}

/// The timers of `owner`, if it is still there.
fn timers_of<'a>(
    sessions: &'a HashMap<CallId, Session>,
    proposals: &'a HashMap<SessionKey, Proposal>,
    outgoing: &'a HashMap<Sid, OutgoingProposal>,
    owner: &Owner,
) -> Option<&'a Timers> {
    match owner {
        Owner::Session(call_id) => sessions.get(call_id).map(|s| &s.timers),
        Owner::Proposal(peer, sid) => proposals
            .get(&(peer.clone(), sid.clone()))
            .map(|p| &p.timers),
        Owner::Outgoing(sid) => outgoing.get(sid).map(|p| &p.timers),
    }
}
