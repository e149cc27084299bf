//! Answering: a caller's `session-initiate` (admitted, offer read, ringing, the call started),
//! the session actions that follow it, the media leg's transport becoming our
//! `session-accept` (or, for a call we place, our offer), and trickled candidates both ways.

use std::time::Instant;

use jid::Jid;

use super::admission::{verdict, Asked, Verdict};
use super::{
    CallStart, MediaEvent, Output, Refusal, SessionKey, Signalling, MAX_RESTARTS_PER_CALL,
    MIN_RESTART_INTERVAL,
};
use crate::jingle::negotiate::{answer, read_offer, LocalTransport};
use crate::jingle::session::{Role, Session, SessionState};
use crate::jingle::timers::{Owner, Timer, Timers};
use crate::protocol::ice_udp::IceUdpTransport;
use crate::protocol::jingle::{Action, Content, Jingle, Reason, SessionInfo, Transport};
use crate::types::{CallId, EndReason};

impl Signalling {
    pub(super) fn handle_initiate(
        &mut self,
        now: Instant,
        key: SessionKey,
        to: Jid,
        jingle: Jingle,
    ) -> Result<(), Refusal> {
        let virtual_jid = to
            .node()
            .map(|n| n.to_string())
            .ok_or(Refusal::UnknownCallee)?;
        let policy = self
            .config
            .virtual_jids
            .get(&virtual_jid)
            .cloned()
            .ok_or(Refusal::UnknownCallee)?;
        if self.closing {
            return Err(Refusal::ShuttingDown);
        }
        if !self.wins_against_our_initiate(&key.0, &key.1, &virtual_jid) {
            return Err(Refusal::TieBreak);
        }
        // A proposal is only for the virtual JID it was made to.
        let proposal = match self.proposals.remove(&key) {
            Some(p) if p.virtual_jid == virtual_jid => Some(p),
            Some(other) => {
                self.proposals.insert(key.clone(), other);
                None
            }
            None => None,
        };
        let via_jmi = proposal.is_some();
        let (asked, admitted) = match via_jmi {
            true => (Asked::Proceeded, Ok(())),
            false => {
                let in_progress = self.in_progress(&key.0, &virtual_jid);
                let admitted = self.admission.admit(now, &key.0, &policy, in_progress);
                (Asked::Initiate, admitted)
            }
        };
        let refusal = match verdict(asked, admitted, policy.available) {
            Verdict::RefuseIq(refusal) => return Err(refusal),
            Verdict::End(reason) => Some(reason),
            Verdict::Start => None,
        };
        let (peer, sid) = key;
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
                    virtual_jid,
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
            virtual_jid: virtual_jid.clone(),
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
                role: Role::Answering {
                    initiate: fingerprint_of(&jingle),
                },
                remote_ufrag: offer.ice_ufrag.clone(),
                peer,
                local: to,
                virtual_jid,
                sid,
                via_jmi,
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
        self.index_timers(Owner::Session(call_id));
        Ok(())
    }

    pub(super) fn handle_session_action(
        &mut self,
        now: Instant,
        call_id: CallId,
        jingle: Jingle,
    ) -> Result<(), Refusal> {
        let Some(session) = self.sessions.get_mut(&call_id) else {
            return Err(Refusal::UnknownSession);
        };
        match jingle.action {
            Action::SessionInitiate
                if session.role
                    == (Role::Answering {
                        initiate: fingerprint_of(&jingle),
                    }) =>
            {
                Ok(())
            }
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

    pub(super) fn handle_transport_info(
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

    /// An event from the media leg of `call_id`.
    pub fn handle_media(&mut self, _now: Instant, call_id: CallId, event: MediaEvent) {
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

    pub(super) fn send_local_transport(&mut self, call_id: CallId, mut local: LocalTransport) {
        let Some(session) = self.sessions.get_mut(&call_id) else {
            return;
        };
        if session.is_calling() && !session.answer_sent() {
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

    pub(super) fn send_transport_info(&mut self, call_id: CallId, mut transport: IceUdpTransport) {
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
