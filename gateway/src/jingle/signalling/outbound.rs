//! Calls the gateway places: to a bare JID with a XEP-0353 `<propose/>` that rings every device
//! of the user (the first `<proceed/>` gets the `session-initiate`), or to a full JID with a
//! `session-initiate` at once. The offer goes out when the media leg has gathered; the callee's
//! `session-accept` is read into [`Output::Answered`].

use std::time::{Duration, Instant};

use jid::{BareJid, FullJid, Jid};

use super::{Output, Signalling};
use crate::jingle::negotiate::{offer, read_answer, LocalTransport, OUR_CONTENT};
use crate::jingle::session::{Role, Session, SessionState};
use crate::jingle::timers::{Owner, Timer, Timers};
use crate::jingle::CallStart;
use crate::protocol::jingle::{Action, Creator, Group, Jingle, Reason, ReasonElement, Sid};
use crate::protocol::jmi::Jmi;
use crate::types::CallId;
use crate::types::EndReason;

/// A `<propose/>` of ours, waiting for one of the user's devices to proceed or reject.
#[derive(Debug, Clone)]
pub(super) struct OutgoingProposal {
    pub(super) call_id: CallId,
    /// Local part of the virtual JID that calls.
    pub(super) virtual_jid: String,
    /// The user rung.
    pub(super) target: BareJid,
    /// Ends the ringing.
    pub(super) timers: Timers,
}

/// Who a session we initiate is between.
struct OutboundSession {
    call_id: CallId,
    /// The virtual JID's device JID.
    local: Jid,
    /// The device that takes the call.
    peer: FullJid,
    sid: Sid,
    /// Whether the device proceeded with a XEP-0353 proposal (then `<finish/>` ends it too).
    via_jmi: bool,
}

impl Signalling {
    /// Places a call from the virtual JID `virtual_jid` to `target`, ringing for at most
    /// `ring_timeout`. A bare JID rings every device of the user (XEP-0353); a full JID gets a
    /// `session-initiate` directly. How it goes comes out as [`Output::StartCall`] (a session
    /// starts: start its media leg), [`Output::Answered`], [`Output::DialFailed`] and
    /// [`Output::StopCall`].
    pub fn place_call(
        &mut self,
        now: Instant,
        virtual_jid: &str,
        target: Jid,
        ring_timeout: Duration,
    ) -> Result<CallId, EndReason> {
        if self.closing {
            return Err(EndReason::Shutdown);
        }
        if self.calls_in_progress() >= self.admission.limits().max_calls {
            return Err(EndReason::Busy);
        }
        let device = self
            .device_jid(virtual_jid)
            .ok_or(EndReason::EndpointUnavailable)?;
        let call_id = CallId(self.next_call);
        self.next_call += 1;
        // Unique in this process (the IQ prefix is unique per process), unguessable enough
        // together with it.
        let sid = Sid(format!("{}call{}", self.config.iq_id_prefix, call_id.0));
        let mut timers = Timers::default();
        timers.set(Timer::Ring, now + ring_timeout);
        match target.try_into_full() {
            Ok(full) => {
                let session = OutboundSession {
                    call_id,
                    local: device,
                    peer: full,
                    sid,
                    via_jmi: false,
                };
                self.start_outbound_session(session, virtual_jid, timers);
            }
            Err(bare) => {
                self.outputs.push_back(Output::Jmi {
                    from: device,
                    to: bare.clone().into(),
                    jmi: Jmi::Propose {
                        sid: sid.clone(),
                        media: vec!["audio".into()],
                    },
                });
                self.outgoing.insert(
                    sid.clone(),
                    OutgoingProposal {
                        call_id,
                        virtual_jid: virtual_jid.to_string(),
                        target: bare,
                        timers,
                    },
                );
                self.index_timers(Owner::Outgoing(sid));
            }
        }
        Ok(call_id)
    }

    /// Gives up a call we placed: a proposal is retracted, a session terminated, both with
    /// `reason`. Does nothing to a call that is over.
    pub fn cancel_call(&mut self, call_id: CallId, reason: EndReason) {
        let proposal = self
            .outgoing
            .iter()
            .find(|(_, p)| p.call_id == call_id)
            .map(|(sid, _)| sid.clone());
        match proposal.and_then(|sid| self.outgoing.remove_entry(&sid)) {
            Some((sid, proposal)) => {
                if let Some(device) = self.device_jid(&proposal.virtual_jid) {
                    self.outputs.push_back(Output::Jmi {
                        from: device,
                        to: proposal.target.into(),
                        jmi: Jmi::Retract {
                            sid,
                            tie_break: false,
                            reason: Some(ReasonElement {
                                reason: Reason::Cancel,
                                text: Some(reason.as_str().into()),
                            }),
                        },
                    });
                }
                self.outputs
                    .push_back(Output::DialFailed { call_id, reason });
            }
            None => self.end_session(call_id, reason),
        }
    }

    /// A message bounced with an error: a proposal of ours whose id it carries cannot ring
    /// anyone (no such user, or a server that refuses it).
    pub fn handle_jmi_bounce(&mut self, _now: Instant, from: &Jid, id: &str) {
        let sid = Sid(id.to_string());
        let bounced = self
            .outgoing
            .get(&sid)
            .is_some_and(|p| from.to_bare() == p.target);
        if let Some(proposal) = bounced.then(|| self.outgoing.remove(&sid)).flatten() {
            self.outputs.push_back(Output::DialFailed {
                call_id: proposal.call_id,
                reason: EndReason::PeerGone,
            });
        }
    }

    /// A JMI element about a proposal of ours, from one of the target's devices.
    pub(super) fn handle_outgoing_jmi(&mut self, now: Instant, from: FullJid, jmi: Jmi) {
        let sid = jmi.sid().clone();
        let Some(proposal) = self.outgoing.get(&sid) else {
            return;
        };
        if from.to_bare() != proposal.target {
            return;
        }
        match jmi {
            Jmi::Proceed { .. } => {
                let Some(proposal) = self.outgoing.remove(&sid) else {
                    return;
                };
                let Some(device) = self.device_jid(&proposal.virtual_jid) else {
                    return;
                };
                // The other devices saw the proceed (carbons) and stop ringing. The device
                // that proceeded accepts the session-initiate without asking again.
                let mut timers = Timers::default();
                timers.set(Timer::Answer, now + self.config.answer_timeout);
                let session = OutboundSession {
                    call_id: proposal.call_id,
                    local: device,
                    peer: from,
                    sid,
                    via_jmi: true,
                };
                self.start_outbound_session(session, &proposal.virtual_jid, timers);
            }
            Jmi::Reject { reason, .. } => {
                if let Some(proposal) = self.outgoing.remove(&sid) {
                    let reason = reason.map(|r| r.reason).unwrap_or(Reason::Decline);
                    self.outputs.push_back(Output::DialFailed {
                        call_id: proposal.call_id,
                        reason: EndReason::PeerRejected(reason),
                    });
                }
            }
            Jmi::Ringing { .. } => tracing::debug!(%from, "the callee's device rings"),
            Jmi::Propose { .. } | Jmi::Retract { .. } | Jmi::Accept { .. } | Jmi::Finish { .. } => {
            }
        }
    }

    /// A session we initiate with `peer`: the media leg starts gathering, and the offer goes
    /// out with its local transport.
    fn start_outbound_session(
        &mut self,
        session: OutboundSession,
        virtual_jid: &str,
        timers: Timers,
    ) {
        let OutboundSession {
            call_id,
            local,
            peer,
            sid,
            via_jmi,
        } = session;
        self.outputs.push_back(Output::StartCall(CallStart {
            call_id,
            virtual_jid: virtual_jid.to_string(),
            peer: peer.clone(),
            sid: sid.clone(),
            offer: None,
            via_jmi: false,
        }));
        self.by_key.insert((peer.clone(), sid.clone()), call_id);
        self.sessions.insert(
            call_id,
            Session {
                call_id,
                role: Role::Calling,
                peer,
                local,
                virtual_jid: virtual_jid.to_string(),
                sid,
                via_jmi,
                content_name: OUR_CONTENT.into(),
                creator: Creator::Initiator,
                negotiated: None,
                remote_ufrag: String::new(),
                state: SessionState::AwaitingTransport,
                early_candidates: Vec::new(),
                timers,
                restarts: 0,
                last_restart: None,
            },
        );
        self.index_timers(Owner::Session(call_id));
    }

    /// The media leg has gathered: the `session-initiate` with our offer goes out.
    pub(super) fn send_offer(&mut self, call_id: CallId, mut local: LocalTransport) {
        let Some(session) = self.sessions.get_mut(&call_id) else {
            return;
        };
        local.candidates.append(&mut session.early_candidates);
        let mut initiate = Jingle::new(Action::SessionInitiate, session.sid.clone());
        initiate.initiator = Some(session.local.clone());
        initiate.contents = vec![offer(&local, &self.config.fingerprint_sha256)];
        initiate.group = Some(Group {
            semantics: "BUNDLE".into(),
            contents: vec![OUR_CONTENT.into()],
        });
        session.state = SessionState::Ringing;
        let (from, to) = (session.local.clone(), session.peer.clone());
        let id = self.send_jingle(Some(call_id), &from, &to, initiate);
        if let Some(pending) = self.pending_iqs.get_mut(&id) {
            pending.critical = true;
        }
    }

    /// The callee's `session-accept`: the call is answered, or ended when the answer is unusable.
    pub(super) fn handle_accept(&mut self, now: Instant, call_id: CallId, accept: &Jingle) {
        let media = match read_answer(accept) {
            Ok(media) => media,
            Err(reason) => {
                self.end_session(call_id, reason);
                return;
            }
        };
        let Some(session) = self.sessions.get_mut(&call_id) else {
            return;
        };
        session.remote_ufrag = media.ice_ufrag.clone();
        session.content_name = media.content_name.clone();
        session.negotiated = Some(media.clone());
        session.state = SessionState::Active;
        session.timers.stop(Timer::Ring);
        session.timers.stop(Timer::Answer);
        session
            .timers
            .set(Timer::MaxDuration, now + self.config.max_duration);
        self.index_timers(Owner::Session(call_id));
        self.outputs.push_back(Output::Answered { call_id, media });
    }
}
