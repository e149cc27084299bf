//! Glare: the gateway calls someone who calls it at the same moment. XEP-0166 ("Tie Breaking
//! Related to Jingle Actions") and XEP-0353 ("Tie Breaking") settle it the same way: the session
//! with the lower session id (octet order) wins, and with equal ids the one sent by the lower
//! JID. The loser is refused with `conflict` + `<tie-break/>` (a session-initiate) or a
//! `<reject/>` with `<tie-break/>` (a proposal); whoever receives the winner withdraws its own.

use std::time::Instant;

use jid::{FullJid, Jid};

use super::{Output, Refusal, Signalling};
use crate::jingle::session::SessionState;
use crate::protocol::jingle::{Jingle, Sid};
use crate::protocol::jmi::Jmi;
use crate::types::CallId;
use crate::types::EndReason;

/// Whether the peer's session (`theirs`, sent from `their_jid`) overrules ours (`ours`, sent
/// from `our_jid`).
fn theirs_wins(theirs: &Sid, their_jid: &str, ours: &Sid, our_jid: &str) -> bool {
    match theirs.0.as_bytes().cmp(ours.0.as_bytes()) {
        std::cmp::Ordering::Less => true,
        std::cmp::Ordering::Greater => false,
        std::cmp::Ordering::Equal => their_jid.as_bytes() < our_jid.as_bytes(),
    }
}

impl Signalling {
    /// Whether a `session-initiate` from `peer` with `sid` to the virtual JID `virtual_jid` may go
    /// on: true unless a `session-initiate` of ours to that device is still unanswered and
    /// ours wins the tie-break. When theirs wins, the peer refuses ours with a tie-break error.
    pub(super) fn wins_against_our_initiate(
        &self,
        peer: &FullJid,
        sid: &Sid,
        virtual_jid: &str,
    ) -> bool {
        self.sessions
            .values()
            .filter(|s| s.is_calling() && s.peer == *peer && s.virtual_jid == virtual_jid)
            .filter(|s| {
                matches!(
                    s.state,
                    SessionState::AwaitingTransport | SessionState::Ringing
                )
            })
            .all(|ours| theirs_wins(sid, peer.as_str(), &ours.sid, ours.local.as_str()))
    }

    /// A `session-initiate` with the session id of a session we initiated to the same device:
    /// the lower JID wins. If theirs does, our session gives way (the peer refuses it) and theirs
    /// starts as a new call.
    pub(super) fn initiate_on_our_session(
        &mut self,
        now: Instant,
        call_id: CallId,
        to: Jid,
        jingle: Jingle,
    ) -> Result<(), Refusal> {
        let Some(ours) = self.sessions.get(&call_id) else {
            return Err(Refusal::UnknownSession);
        };
        let pending = matches!(
            ours.state,
            SessionState::AwaitingTransport | SessionState::Ringing
        );
        if !pending {
            return Err(Refusal::OutOfOrder);
        }
        let (peer, local) = (ours.peer.clone(), ours.local.clone());
        if !theirs_wins(&jingle.sid, peer.as_str(), &ours.sid, local.as_str()) {
            return Err(Refusal::TieBreak);
        }
        self.end_session(call_id, EndReason::TieBreak);
        self.handle_initiate(now, (peer, jingle.sid.clone()), to, jingle)
    }

    /// Whether a `<propose/>` from `peer` with `sid` to the virtual JID `virtual_jid` may go on: true
    /// unless a proposal of ours to the same user is still unanswered and ours wins. When theirs
    /// wins, ours is retracted here.
    pub(super) fn wins_against_our_proposal(
        &mut self,
        peer: &FullJid,
        sid: &Sid,
        virtual_jid: &str,
    ) -> bool {
        let bare = peer.to_bare();
        let Some(device) = self.device_jid(virtual_jid) else {
            return true;
        };
        let ours: Vec<Sid> = self
            .outgoing
            .iter()
            .filter(|(_, p)| p.virtual_jid == virtual_jid && p.target == bare)
            .map(|(ours, _)| ours.clone())
            .collect();
        if ours
            .iter()
            .any(|ours| !theirs_wins(sid, peer.as_str(), ours, device.as_str()))
        {
            return false;
        }
        for ours in ours {
            let Some(proposal) = self.outgoing.remove(&ours) else {
                continue;
            };
            self.outputs.push_back(Output::Jmi {
                from: device.clone(),
                to: proposal.target.into(),
                jmi: Jmi::Retract {
                    sid: ours,
                    reason: Some(EndReason::TieBreak.to_reason_element()),
                    tie_break: true,
                },
            });
            self.outputs.push_back(Output::DialFailed {
                call_id: proposal.call_id,
                reason: EndReason::TieBreak,
            });
        }
        true
    }

    /// Refuses a proposal that lost the tie-break against one of ours.
    pub(super) fn reject_tie_break(&mut self, (peer, sid): (FullJid, Sid), virtual_jid: String) {
        let Some(device) = self.device_jid(&virtual_jid) else {
            return;
        };
        self.outputs.push_back(Output::Jmi {
            from: device,
            to: peer.clone().into(),
            jmi: Jmi::Reject {
                sid,
                reason: Some(EndReason::TieBreak.to_reason_element()),
                tie_break: true,
            },
        });
        self.outputs.push_back(Output::CallNotStarted {
            virtual_jid,
            peer,
            reason: EndReason::TieBreak,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lower_sid_wins_then_the_lower_jid() {
        let (a, b) = (Sid("a1".into()), Sid("b1".into()));
        assert!(theirs_wins(&a, "x@y/z", &b, "w@y/z"));
        assert!(!theirs_wins(&b, "x@y/z", &a, "w@y/z"));
        // Octet order: upper case before lower case.
        assert!(theirs_wins(&Sid("Z".into()), "x", &Sid("a".into()), "w"));
        assert!(theirs_wins(&a, "a@y/z", &a, "b@y/z"));
        assert!(!theirs_wins(&a, "b@y/z", &a, "a@y/z"));
    }
}
