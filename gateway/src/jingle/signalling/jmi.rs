//! XEP-0353 from callers: a proposal is admitted and answered with ringing and proceed (or a
//! reject), then waits for its `session-initiate`; retract and finish end what they name.

use std::time::Instant;

use jid::{FullJid, Jid};

use super::admission::{verdict, Asked, Verdict};
use super::{Output, Proposal, SessionKey, Signalling, VirtualJidPolicy};
use crate::jingle::timers::{Owner, Timer, Timers};
use crate::protocol::jingle::Reason;
use crate::protocol::jmi::Jmi;
use crate::types::EndReason;

impl Signalling {
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
        let Some(virtual_jid) = to.node().map(|n| n.to_string()) else {
            return;
        };
        let Some(policy) = self.config.virtual_jids.get(&virtual_jid).cloned() else {
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
                if !self.wins_against_our_proposal(&key.0, &key.1, &virtual_jid) {
                    self.reject_tie_break(key, virtual_jid);
                    return;
                }
                self.handle_propose(now, key, virtual_jid, &policy, &media);
            }
            Jmi::Retract { .. } => {
                if self.proposals.remove(&key).is_some() {
                    self.outputs.push_back(Output::CallNotStarted {
                        virtual_jid,
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

    pub(super) fn handle_propose(
        &mut self,
        now: Instant,
        key: SessionKey,
        virtual_jid: String,
        policy: &VirtualJidPolicy,
        media: &[String],
    ) {
        let (peer, sid) = key;
        let Some(device) = self.device_jid(&virtual_jid) else {
            return;
        };
        let refusal = if self.closing {
            Some(EndReason::Shutdown)
        } else if !media.iter().any(|m| m == "audio") {
            Some(EndReason::UnsupportedApplications)
        } else {
            let in_progress = self.in_progress(&peer, &virtual_jid);
            let admitted = self.admission.admit(now, &peer, policy, in_progress);
            match verdict(Asked::Proposal, admitted, policy.available) {
                Verdict::Start => None,
                Verdict::End(reason) => Some(reason),
                // A proposal's refusal is always a reject with its reason.
                Verdict::RefuseIq(_) => Some(EndReason::Busy),
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
                virtual_jid,
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
        self.proposals.insert(
            (peer.clone(), sid.clone()),
            Proposal {
                virtual_jid,
                timers,
            },
        );
        self.index_timers(Owner::Proposal(peer, sid));
    }

    /// A proposal we proceeded with will not become a session: tell the caller that holds our
    /// `<proceed/>` with a `<finish/>` from the device that proceeded.
    pub(super) fn give_up_proposal(
        &mut self,
        (peer, sid): SessionKey,
        proposal: Proposal,
        reason: EndReason,
    ) {
        if let Some(device) = self.device_jid(&proposal.virtual_jid) {
            self.send_finish(&device, peer.clone().into(), &sid, reason);
        }
        self.outputs.push_back(Output::CallNotStarted {
            virtual_jid: proposal.virtual_jid,
            peer,
            reason,
        });
    }
}
