//! The IQs the core sends and their answers: every Jingle IQ gets an id, the answers of the
//! session's peer (and only its) reach the session, a bounded number per call are waited for,
//! and an error to our accept or initiate ends the call.

use std::time::Instant;

use jid::{FullJid, Jid};
use xmpp_parsers::stanza_error::DefinedCondition;

use super::{Output, Signalling, MAX_PENDING_IQS_PER_CALL};
use crate::jingle::session::SessionState;
use crate::jingle::timers::{Owner, Timer};
use crate::protocol::jingle::{Action, Jingle, Sid};
use crate::protocol::jmi::Jmi;
use crate::types::{CallId, EndReason};

/// An IQ we sent in a session, waiting for its answer.
#[derive(Debug, Clone)]
pub(super) struct PendingIq {
    pub(super) call_id: CallId,
    pub(super) peer: FullJid,
    /// Whether it is our session-accept or session-initiate (an error to it ends the call).
    pub(super) critical: bool,
}

impl Signalling {
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
                        self.index_timers(Owner::Session(call_id));
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

    /// Queues a Jingle IQ and returns its id; answers to it reach the call when one is given.
    pub(super) fn send_jingle(
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

    pub(super) fn send_terminate(
        &mut self,
        from: &Jid,
        to: &FullJid,
        sid: &Sid,
        reason: EndReason,
    ) {
        let mut terminate = Jingle::new(Action::SessionTerminate, sid.clone());
        terminate.reason = Some(reason.to_reason_element());
        self.send_jingle(None, from, to, terminate);
    }

    pub(super) fn send_finish(&mut self, from: &Jid, to: Jid, sid: &Sid, reason: EndReason) {
        self.outputs.push_back(Output::Jmi {
            from: from.clone(),
            to,
            jmi: Jmi::Finish {
                sid: sid.clone(),
                reason: Some(reason.to_reason_element()),
            },
        });
    }
}
