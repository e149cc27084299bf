//! The signalling core, sans-IO: every Jingle session and XEP-0353 proposal of the gateway, the
//! call limits, and the timers. Input comes through `handle_*(now, ...)`, output leaves through
//! [`Signalling::poll_output`], and [`Signalling::poll_timeout`] gives the next deadline. It never
//! reads the clock, touches a socket or spawns.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use jid::{FullJid, Jid};
use xmpp_parsers::stanza_error::DefinedCondition;

use crate::protocol::ice_udp::{Candidate, IceUdpTransport};
use crate::protocol::jingle::{Action, Content, Jingle, Reason, SessionInfo, Sid, Transport};
use crate::protocol::jmi::Jmi;

use super::negotiate::{answer, read_offer, LocalTransport, Negotiated};
use super::session::{Session, SessionState};
use super::timers::{Timer, Timers};
use crate::types::CallId;
use crate::types::EndReason;

mod admission;
mod glare;
mod outbound;
#[cfg(test)]
mod tests;

pub use admission::{CallLimits, Callee, MAX_TRACKED_CALLERS, MAX_TRACKED_DOMAINS};

use admission::{Admission, InProgress, Refused};
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
    pub callees: HashMap<String, Callee>,
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
    pub callee: String,
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
        callee: String,
        /// The caller.
        peer: FullJid,
        /// Why.
        reason: EndReason,
    },
}

/// An XEP-0353 proposal we proceeded with, waiting for its `session-initiate`.
#[derive(Debug, Clone)]
struct Proposal {
    callee: String,
    timers: Timers,
}

type SessionKey = (FullJid, Sid);

/// An IQ we sent in a session, waiting for its answer.
#[derive(Debug, Clone)]
struct PendingIq {
    call_id: CallId,
    peer: FullJid,
    /// Whether it is our session-accept or session-initiate (an error to it ends the call).
    critical: bool,
}

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
            next_call: 1,
            next_iq: 1,
            closing: false,
        }
    }

    /// The virtual JIDs (local part, whether their endpoint is available, who may call) for new
    /// calls.
    pub fn set_callees(&mut self, callees: HashMap<String, Callee>) {
        self.config.callees = callees;
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
    pub fn poll_timeout(&self) -> Option<Instant> {
        let sessions = self.sessions.values().filter_map(|s| s.timers.next());
        let proposals = self.proposals.values().filter_map(|p| p.timers.next());
        let outgoing = self.outgoing.values().filter_map(|p| p.timers.next());
        sessions.chain(proposals).chain(outgoing).min()
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
            let ours = self.sessions.get(&call_id).is_some_and(|s| s.outbound);
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

    fn handle_initiate(
        &mut self,
        now: Instant,
        key: SessionKey,
        to: Jid,
        jingle: Jingle,
    ) -> Result<(), Refusal> {
        let callee = to
            .node()
            .map(|n| n.to_string())
            .ok_or(Refusal::UnknownCallee)?;
        let policy = self
            .config
            .callees
            .get(&callee)
            .cloned()
            .ok_or(Refusal::UnknownCallee)?;
        if self.closing {
            return Err(Refusal::ShuttingDown);
        }
        if !self.wins_against_our_initiate(&key.0, &key.1, &callee) {
            return Err(Refusal::TieBreak);
        }
        // A proposal is only for the virtual JID it was made to.
        let proposal = match self.proposals.remove(&key) {
            Some(p) if p.callee == callee => Some(p),
            Some(other) => {
                self.proposals.insert(key.clone(), other);
                None
            }
            None => None,
        };
        // A call proceeded with was admitted as a proposal.
        let admitted = match proposal {
            Some(_) => Ok(()),
            None => {
                let in_progress = self.in_progress(&key.0, &callee);
                self.admission.admit(now, &key.0, &policy, in_progress)
            }
        };
        match admitted {
            Err(Refused::NotAllowed) => return Err(Refusal::Forbidden),
            Err(Refused::GatewayFull | Refused::CallerFull) => return Err(Refusal::Overloaded),
            Err(Refused::DomainFull | Refused::TooFast) => return Err(Refusal::TooManyCalls),
            Err(Refused::CalleeFull) | Ok(()) => {}
        }
        let (peer, sid) = key;
        let via_jmi = proposal.is_some();
        let refusal = if !policy.available {
            Some(EndReason::EndpointUnavailable)
        } else if admitted == Err(Refused::CalleeFull) {
            Some(EndReason::Busy)
        } else {
            None
        };
        let offer = match refusal {
            Some(reason) => Err(reason),
            None => read_offer(&jingle, self.config.prefer_dtls_active),
        };
        let offer = match offer {
            Ok(offer) => offer,
            Err(reason) => {
                self.send_terminate(&to, &peer, &sid, reason);
                if via_jmi {
                    self.send_finish(&to, peer.clone().into(), &sid, reason);
                }
                self.outputs.push_back(Output::CallNotStarted {
                    callee,
                    peer,
                    reason,
                });
                return Ok(());
            }
        };

        let call_id = CallId(self.next_call);
        self.next_call += 1;
        let mut timers = Timers::default();
        timers.set(Timer::Answer, now + self.config.answer_timeout);
        let mut ringing = Jingle::new(Action::SessionInfo, sid.clone());
        ringing.info = Some(SessionInfo::Ringing);
        self.send_jingle(Some(call_id), &to, &peer, ringing);
        self.outputs.push_back(Output::StartCall(CallStart {
            call_id,
            callee: callee.clone(),
            peer: peer.clone(),
            sid: sid.clone(),
            offer: Some(offer.clone()),
            via_jmi,
        }));
        self.by_key.insert((peer.clone(), sid.clone()), call_id);
        self.sessions.insert(
            call_id,
            Session {
                call_id,
                outbound: false,
                remote_ufrag: offer.ice_ufrag.clone(),
                peer,
                local: to,
                callee,
                sid,
                via_jmi,
                initiate: fingerprint_of(&jingle),
                content_name: offer.content_name.clone(),
                creator: offer.creator,
                negotiated: Some(offer),
                state: SessionState::AwaitingTransport,
                early_candidates: Vec::new(),
                timers,
                restarts: 0,
                last_restart: None,
            },
        );
        Ok(())
    }

    fn handle_session_action(
        &mut self,
        now: Instant,
        call_id: CallId,
        jingle: Jingle,
    ) -> Result<(), Refusal> {
        let Some(session) = self.sessions.get_mut(&call_id) else {
            return Err(Refusal::UnknownSession);
        };
        match jingle.action {
            Action::SessionInitiate if session.initiate == fingerprint_of(&jingle) => Ok(()),
            Action::SessionInitiate => Err(Refusal::OutOfOrder),
            Action::TransportInfo => self.handle_transport_info(now, call_id, &jingle.contents),
            Action::SessionInfo => match jingle.info {
                Some(SessionInfo::Other(..)) => Err(Refusal::UnsupportedInfo),
                _ => Ok(()),
            },
            Action::SessionTerminate => {
                let reason = jingle.reason.map(|r| r.reason).unwrap_or(Reason::Success);
                self.end_session(call_id, EndReason::PeerHungUp(reason));
                Ok(())
            }
            Action::ContentAdd => {
                // One audio stream per call: anything added (video, a second audio) is refused
                // while the audio continues.
                let mut reject = Jingle::new(Action::ContentReject, jingle.sid.clone());
                reject.contents = jingle.contents.iter().map(bare_content).collect();
                reject.reason = Some(EndReason::UnsupportedApplications.to_reason_element());
                let (local, peer) = (session.local.clone(), session.peer.clone());
                self.send_jingle(Some(call_id), &local, &peer, reject);
                Ok(())
            }
            Action::ContentRemove => {
                if jingle
                    .contents
                    .iter()
                    .any(|c| c.name == session.content_name)
                {
                    self.end_session(call_id, EndReason::ContentRemoved);
                }
                Ok(())
            }
            Action::TransportReplace => {
                // Only ICE-UDP is spoken: XEP-0166 asks for a transport-reject.
                let mut reject = Jingle::new(Action::TransportReject, jingle.sid.clone());
                reject.contents = jingle.contents.iter().map(bare_content).collect();
                let (local, peer) = (session.local.clone(), session.peer.clone());
                self.send_jingle(Some(call_id), &local, &peer, reject);
                Ok(())
            }
            Action::ContentModify | Action::DescriptionInfo | Action::SecurityInfo => Ok(()),
            Action::SessionAccept if session.state == SessionState::Ringing => {
                self.handle_accept(now, call_id, &jingle);
                Ok(())
            }
            Action::SessionAccept
            | Action::ContentAccept
            | Action::ContentReject
            | Action::TransportAccept
            | Action::TransportReject => Err(Refusal::OutOfOrder),
        }
    }

    fn handle_transport_info(
        &mut self,
        now: Instant,
        call_id: CallId,
        contents: &[Content],
    ) -> Result<(), Refusal> {
        let Some(session) = self.sessions.get_mut(&call_id) else {
            return Err(Refusal::UnknownSession);
        };
        for content in contents {
            if content.name != session.content_name {
                continue;
            }
            let Some(Transport::IceUdp(transport)) = &content.transport else {
                continue;
            };
            // Before the callee's answer there are no credentials to compare: only candidates.
            let answered = session.negotiated.is_some();
            match (&transport.ufrag, &transport.pwd) {
                (Some(ufrag), Some(pwd)) if answered && *ufrag != session.remote_ufrag => {
                    // Each restart makes the gateway check new addresses: a few, not too fast.
                    let too_soon = session
                        .last_restart
                        .is_some_and(|at| now.saturating_duration_since(at) < MIN_RESTART_INTERVAL);
                    if session.restarts >= MAX_RESTARTS_PER_CALL
                        || too_soon
                        || !crate::protocol::ice_udp::credentials_valid(ufrag, pwd)
                    {
                        return Err(Refusal::RestartRefused);
                    }
                    session.restarts += 1;
                    session.last_restart = Some(now);
                    session.remote_ufrag = ufrag.clone();
                    self.outputs.push_back(Output::IceRestart {
                        call_id,
                        ufrag: ufrag.clone(),
                        pwd: pwd.clone(),
                        candidates: transport.candidates.clone(),
                    });
                }
                _ if !transport.candidates.is_empty() => {
                    self.outputs.push_back(Output::RemoteCandidates {
                        call_id,
                        candidates: transport.candidates.clone(),
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// An XEP-0353 element in a message from `from` to the virtual JID `to`. `message_id` and
    /// `wants_receipt` come from the message, for the XEP-0184 receipt.
    pub fn handle_jmi(
        &mut self,
        now: Instant,
        from: FullJid,
        to: Jid,
        message_id: Option<String>,
        wants_receipt: bool,
        jmi: Jmi,
    ) {
        if self.outgoing.contains_key(jmi.sid()) {
            self.handle_outgoing_jmi(now, from, jmi);
            return;
        }
        let Some(callee) = to.node().map(|n| n.to_string()) else {
            return;
        };
        let Some(policy) = self.config.callees.get(&callee).cloned() else {
            return;
        };
        let key = (from, jmi.sid().clone());
        match jmi {
            Jmi::Propose { media, .. } => {
                if let (true, Some(id)) = (wants_receipt, message_id) {
                    self.outputs.push_back(Output::Receipt {
                        from: to.clone(),
                        to: key.0.clone(),
                        id,
                    });
                }
                if self.proposals.contains_key(&key) || self.by_key.contains_key(&key) {
                    return; // A repeated proposal: already answered.
                }
                if !self.wins_against_our_proposal(&key.0, &key.1, &callee) {
                    self.reject_tie_break(key, callee);
                    return;
                }
                self.handle_propose(now, key, callee, &policy, &media);
            }
            Jmi::Retract { .. } => {
                if self.proposals.remove(&key).is_some() {
                    self.outputs.push_back(Output::CallNotStarted {
                        callee,
                        peer: key.0,
                        reason: EndReason::PeerRetracted,
                    });
                } else if let Some(&call_id) = self.by_key.get(&key) {
                    self.end_session(call_id, EndReason::PeerRetracted);
                }
            }
            Jmi::Finish { reason, .. } => {
                if let Some(&call_id) = self.by_key.get(&key) {
                    let reason = reason.map(|r| r.reason).unwrap_or(Reason::Success);
                    self.end_session(call_id, EndReason::PeerHungUp(reason));
                }
            }
            // Answers to proposals of ours that are over (a second device proceeding late).
            Jmi::Accept { .. } | Jmi::Proceed { .. } | Jmi::Reject { .. } | Jmi::Ringing { .. } => {
            }
        }
    }

    fn handle_propose(
        &mut self,
        now: Instant,
        key: SessionKey,
        callee: String,
        policy: &Callee,
        media: &[String],
    ) {
        let (peer, sid) = key;
        let Some(device) = self.device_jid(&callee) else {
            return;
        };
        let refusal = if self.closing {
            Some(EndReason::Shutdown)
        } else if !media.iter().any(|m| m == "audio") {
            Some(EndReason::UnsupportedApplications)
        } else {
            let in_progress = self.in_progress(&peer, &callee);
            match self.admission.admit(now, &peer, policy, in_progress) {
                Err(Refused::NotAllowed) => Some(EndReason::CallerNotAllowed),
                Err(Refused::DomainFull | Refused::TooFast) => Some(EndReason::TooManyCalls),
                Err(Refused::GatewayFull | Refused::CallerFull | Refused::CalleeFull) => {
                    Some(EndReason::Busy)
                }
                Ok(()) if !policy.available => Some(EndReason::EndpointUnavailable),
                Ok(()) => None,
            }
        };
        if let Some(reason) = refusal {
            self.outputs.push_back(Output::Jmi {
                from: device,
                to: peer.clone().into(),
                jmi: Jmi::Reject {
                    sid,
                    tie_break: false,
                    reason: Some(reason.to_reason_element()),
                },
            });
            self.outputs.push_back(Output::CallNotStarted {
                callee,
                peer,
                reason,
            });
            return;
        }
        for jmi in [
            Jmi::Ringing { sid: sid.clone() },
            Jmi::Proceed { sid: sid.clone() },
        ] {
            self.outputs.push_back(Output::Jmi {
                from: device.clone(),
                to: peer.clone().into(),
                jmi,
            });
        }
        let mut timers = Timers::default();
        timers.set(Timer::Ring, now + self.config.ring_timeout);
        self.proposals
            .insert((peer, sid), Proposal { callee, timers });
    }

    /// The answer from `from` to an IQ we sent: `error` is `None` for a result. Returns
    /// whether the IQ was one of ours (an answer from anyone but the session's peer is not).
    pub fn handle_iq_response(
        &mut self,
        now: Instant,
        from: &Jid,
        id: &str,
        error: Option<DefinedCondition>,
    ) -> bool {
        match self.pending_iqs.get(id) {
            Some(pending) if from.as_str() == pending.peer.as_str() => {}
            _ => return false,
        }
        let Some(pending) = self.pending_iqs.remove(id) else {
            return false;
        };
        let call_id = pending.call_id;
        match error {
            None => {
                if let Some(session) = self.sessions.get_mut(&call_id) {
                    if matches!(&session.state, SessionState::Accepting { iq_id } if iq_id == id) {
                        session.state = SessionState::Active;
                        session.timers.stop(Timer::Answer);
                        session
                            .timers
                            .set(Timer::MaxDuration, now + self.config.max_duration);
                    }
                }
            }
            Some(condition) => {
                let gone = matches!(
                    condition,
                    DefinedCondition::ServiceUnavailable
                        | DefinedCondition::RecipientUnavailable
                        | DefinedCondition::RemoteServerNotFound
                        | DefinedCondition::RemoteServerTimeout
                        | DefinedCondition::ItemNotFound
                );
                if gone {
                    // The peer is offline, or has lost the session.
                    self.end_session(call_id, EndReason::PeerGone);
                } else if pending.critical && condition == DefinedCondition::Conflict {
                    // Our session-initiate lost a tie-break against the peer's (XEP-0166).
                    self.end_session(call_id, EndReason::TieBreak);
                } else if pending.critical {
                    self.end_session(call_id, EndReason::PeerError);
                }
                // Other refusals (ringing, trickle) do not end the session (XEP-0166).
            }
        }
        true
    }

    /// An event from the media leg of `call_id`.
    pub fn handle_media(&mut self, call_id: CallId, event: MediaEvent) {
        match event {
            MediaEvent::LocalTransport(local) => self.send_local_transport(call_id, local),
            MediaEvent::LocalCandidate(candidate) => {
                let Some(session) = self.sessions.get_mut(&call_id) else {
                    return;
                };
                if !session.answer_sent() {
                    session.early_candidates.push(candidate);
                    return;
                }
                let transport = IceUdpTransport {
                    candidates: vec![candidate],
                    ..IceUdpTransport::default()
                };
                self.send_transport_info(call_id, transport);
            }
            MediaEvent::Ended(reason) => self.end_session(call_id, reason),
        }
    }

    fn send_local_transport(&mut self, call_id: CallId, mut local: LocalTransport) {
        let Some(session) = self.sessions.get_mut(&call_id) else {
            return;
        };
        if session.outbound && !session.answer_sent() {
            self.send_offer(call_id, local);
            return;
        }
        if session.answer_sent() {
            // An ICE restart: our new credentials and candidates.
            let transport = IceUdpTransport {
                ufrag: Some(local.ufrag),
                pwd: Some(local.pwd),
                candidates: local.candidates,
                ..IceUdpTransport::default()
            };
            self.send_transport_info(call_id, transport);
            return;
        }
        local.candidates.append(&mut session.early_candidates);
        let Some(offer) = &session.negotiated else {
            return;
        };
        let (content, group) = answer(offer, &local, &self.config.fingerprint_sha256);
        let mut accept = Jingle::new(Action::SessionAccept, session.sid.clone());
        accept.responder = Some(session.local.clone());
        accept.contents = vec![content];
        accept.group = group;
        let (from, to) = (session.local.clone(), session.peer.clone());
        let id = self.send_jingle(Some(call_id), &from, &to, accept);
        if let Some(pending) = self.pending_iqs.get_mut(&id) {
            pending.critical = true;
        }
        if let Some(session) = self.sessions.get_mut(&call_id) {
            session.state = SessionState::Accepting { iq_id: id };
        }
    }

    fn send_transport_info(&mut self, call_id: CallId, mut transport: IceUdpTransport) {
        let Some(session) = self.sessions.get(&call_id) else {
            return;
        };
        let mut info = Jingle::new(Action::TransportInfo, session.sid.clone());
        transport.skipped_candidates = 0;
        info.contents = vec![Content {
            creator: session.creator,
            name: session.content_name.clone(),
            senders: crate::protocol::jingle::Senders::Both,
            description: None,
            transport: Some(Transport::IceUdp(transport)),
        }];
        let (from, to) = (session.local.clone(), session.peer.clone());
        self.send_jingle(Some(call_id), &from, &to, info);
    }

    /// The caller `peer` went offline: its calls and proposals end.
    pub fn handle_peer_unavailable(&mut self, peer: &FullJid) {
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
                    callee: proposal.callee,
                    peer: key.0,
                    reason: EndReason::PeerGone,
                });
            }
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<(CallId, Timer)> = self
            .sessions
            .values()
            .filter_map(|s| s.timers.expired(now).map(|t| (s.call_id, t)))
            .collect();
        for (call_id, timer) in due {
            let reason = match timer {
                Timer::Answer => EndReason::AnswerTimeout,
                Timer::MaxDuration => EndReason::MaxDuration,
                Timer::Ring => EndReason::RingTimeout,
            };
            self.end_session(call_id, reason);
        }
        let expired: Vec<SessionKey> = self
            .proposals
            .iter()
            .filter(|(_, p)| p.timers.expired(now).is_some())
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            if let Some(proposal) = self.proposals.remove(&key) {
                self.give_up_proposal(key, proposal, EndReason::RingTimeout);
            }
        }
        let unanswered: Vec<CallId> = self
            .outgoing
            .values()
            .filter(|p| p.timers.expired(now).is_some())
            .map(|p| p.call_id)
            .collect();
        for call_id in unanswered {
            self.cancel_call(call_id, EndReason::RingTimeout);
        }
    }

    /// Stops taking calls and ends every call in progress with `<gone/>`.
    pub fn shutdown(&mut self) {
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

    /// A proposal we proceeded with will not become a session: tell the caller that holds our
    /// `<proceed/>` with a `<finish/>` from the device that proceeded.
    fn give_up_proposal(&mut self, (peer, sid): SessionKey, proposal: Proposal, reason: EndReason) {
        if let Some(device) = self.device_jid(&proposal.callee) {
            self.send_finish(&device, peer.clone().into(), &sid, reason);
        }
        self.outputs.push_back(Output::CallNotStarted {
            callee: proposal.callee,
            peer,
            reason,
        });
    }

    /// The full JID a virtual JID proceeds from.
    fn device_jid(&self, callee: &str) -> Option<Jid> {
        FullJid::new(&format!(
            "{callee}@{}/{}",
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
                let to = match session.outbound {
                    true => session.peer.to_bare().into(),
                    false => session.peer.clone().into(),
                };
                self.send_finish(&session.local, to, &session.sid, reason);
            }
        }
        self.outputs.push_back(Output::StopCall { call_id, reason });
    }

    fn send_terminate(&mut self, from: &Jid, to: &FullJid, sid: &Sid, reason: EndReason) {
        let mut terminate = Jingle::new(Action::SessionTerminate, sid.clone());
        terminate.reason = Some(reason.to_reason_element());
        self.send_jingle(None, from, to, terminate);
    }

    fn send_finish(&mut self, from: &Jid, to: Jid, sid: &Sid, reason: EndReason) {
        self.outputs.push_back(Output::Jmi {
            from: from.clone(),
            to,
            jmi: Jmi::Finish {
                sid: sid.clone(),
                reason: Some(reason.to_reason_element()),
            },
        });
    }

    /// Queues a Jingle IQ and returns its id; answers to it reach the call when one is given.
    fn send_jingle(
        &mut self,
        call_id: Option<CallId>,
        from: &Jid,
        to: &FullJid,
        jingle: Jingle,
    ) -> String {
        let id = format!("{}{}", self.config.iq_id_prefix, self.next_iq);
        self.next_iq += 1;
        // A peer that never answers cannot make the table grow: past the bound, answers to a
        // call's IQs are not waited for (only the first, critical ones matter).
        let call_id = call_id.filter(|&call_id| {
            let waiting = self
                .pending_iqs
                .values()
                .filter(|p| p.call_id == call_id)
                .count();
            waiting < MAX_PENDING_IQS_PER_CALL
        });
        if let Some(call_id) = call_id {
            self.pending_iqs.insert(
                id.clone(),
                PendingIq {
                    call_id,
                    peer: to.clone(),
                    critical: false,
                },
            );
        }
        self.outputs.push_back(Output::JingleIq {
            id: id.clone(),
            from: from.clone(),
            to: to.clone(),
            jingle,
        });
        id
    }

    fn calls_in_progress(&self) -> usize {
        self.sessions.len() + self.proposals.len() + self.outgoing.len()
    }

    /// The calls in progress a new call from `caller` to `callee` is counted with.
    fn in_progress(&self, caller: &FullJid, callee: &str) -> InProgress {
        let bare = caller.to_bare();
        let domain = caller.domain();
        let peers = self
            .sessions
            .values()
            .map(|s| (&s.peer, s.callee.as_str()))
            .chain(
                self.proposals
                    .iter()
                    .map(|((p, _), q)| (p, q.callee.as_str())),
            );
        let mut counts = InProgress {
            total: self.calls_in_progress(),
            to_callee: 0,
            from_caller: 0,
            from_domain: 0,
        };
        for (peer, to) in peers {
            counts.to_callee += usize::from(to == callee);
            counts.from_caller += usize::from(peer.to_bare() == bare);
            counts.from_domain += usize::from(peer.domain() == domain);
        }
        counts
    }
}

/// A digest of a `session-initiate`, to recognise an exact duplicate without keeping it.
fn fingerprint_of(jingle: &Jingle) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    String::from(&jingle.to_element()).hash(&mut hasher);
    hasher.finish()
}

/// A content with only its creator and name, as content-reject and transport-reject carry it.
fn bare_content(content: &Content) -> Content {
    Content {
        creator: content.creator,
        name: content.name.clone(),
        senders: content.senders,
        description: None,
        transport: None,
    }
}
